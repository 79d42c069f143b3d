"""dashboard/views"""
