"""abcore dashboard entry point (placeholder until the dashboard issue lands)."""

import streamlit as st

st.set_page_config(page_title="abcore", page_icon="🧪", layout="wide")
st.title("abcore")
st.write("The dashboard is being built. The store and demo data are ready.")
