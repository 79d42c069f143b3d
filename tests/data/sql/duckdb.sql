-- stats
WITH exposures AS (
  SELECT "user_id" AS user_id, MIN(epoch_us(CAST("ts" AS TIMESTAMP))) AS first_us
  FROM ab_experiment_results
  WHERE "experiment_id" = 1 AND "event_type" = 'exposure' AND epoch_us(CAST("ts" AS TIMESTAMP)) < 1768089600000000
  GROUP BY "user_id"
),
population AS (
  SELECT a."user_id" AS user_id, a."variant_id" AS variant, e.first_us, COALESCE(json_extract_string(a."attributes", '$."country"'), '(none)') AS segment
  FROM ab_user_assignments a
  JOIN exposures e ON e.user_id = a."user_id"
  WHERE a."experiment_id" = 1
),
events_in AS (
  SELECT p.user_id, ev."metric_name" AS metric_name, ev."value" AS value, epoch_us(CAST(ev."ts" AS TIMESTAMP)) AS ts_us, p.first_us
  FROM population p
  JOIN ab_experiment_results ev ON ev."user_id" = p.user_id
  WHERE ev."experiment_id" = 1 AND ev."metric_name" IN ('click', 'click_count', 'revenue', 'revenue_abs', 'revenue_pct', 'latency', 'latency_p50') AND ev."event_type" = 'conversion' AND epoch_us(CAST(ev."ts" AS TIMESTAMP)) < 1768089600000000
),
m0_events AS (
  SELECT user_id, metric_name, value, ts_us, first_us, CASE WHEN ts_us >= first_us + 0 THEN 1 ELSE 0 END AS post
  FROM events_in WHERE metric_name IN ('click')
),
m0_user AS (
  SELECT p.user_id, p.variant, p.segment, COALESCE(e.y, 0) AS y, COALESCE(e.x, 0) AS x
  FROM population p
  LEFT JOIN (SELECT user_id, MAX(CASE WHEN post = 1 THEN 1 ELSE 0 END) AS y, MAX(CASE WHEN post = 0 AND ts_us < first_us AND ts_us >= first_us - 1209600000000 THEN 1 ELSE 0 END) AS x FROM m0_events GROUP BY user_id) e ON e.user_id = p.user_id
),
m0_capped AS (
  SELECT * FROM m0_user
),
m1_events AS (
  SELECT user_id, metric_name, value, ts_us, first_us, CASE WHEN ts_us >= first_us + 0 AND ts_us < first_us + 172800000000 THEN 1 ELSE 0 END AS post
  FROM events_in WHERE metric_name IN ('click_count')
),
m1_user AS (
  SELECT p.user_id, p.variant, p.segment, COALESCE(e.y, 0) AS y, COALESCE(e.x, 0) AS x
  FROM population p
  LEFT JOIN (SELECT user_id, SUM(CASE WHEN post = 1 THEN 1 ELSE 0 END) AS y, SUM(CASE WHEN post = 0 AND ts_us < first_us AND ts_us >= first_us - 1209600000000 THEN 1 ELSE 0 END) AS x FROM m1_events GROUP BY user_id) e ON e.user_id = p.user_id
),
m1_capped AS (
  SELECT * FROM m1_user
),
m2_events AS (
  SELECT user_id, metric_name, value, ts_us, first_us, CASE WHEN ts_us >= first_us + 3600000000 AND ts_us < first_us + 262800000000 THEN 1 ELSE 0 END AS post
  FROM events_in WHERE metric_name IN ('revenue')
),
m2_user AS (
  SELECT p.user_id, p.variant, p.segment, COALESCE(e.y, 0) AS y, COALESCE(e.x, 0) AS x
  FROM population p
  LEFT JOIN (SELECT user_id, SUM(CASE WHEN post = 1 THEN CAST(COALESCE(value, 1) AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS y, SUM(CASE WHEN post = 0 AND ts_us < first_us AND ts_us >= first_us - 1209600000000 THEN CAST(COALESCE(value, 1) AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS x FROM m2_events GROUP BY user_id) e ON e.user_id = p.user_id
),
m2_capped AS (
  SELECT * FROM m2_user
),
m3_events AS (
  SELECT user_id, metric_name, value, ts_us, first_us, CASE WHEN ts_us >= first_us + 0 THEN 1 ELSE 0 END AS post
  FROM events_in WHERE metric_name IN ('revenue_abs')
),
m3_user AS (
  SELECT p.user_id, p.variant, p.segment, COALESCE(e.y, 0) AS y, COALESCE(e.x, 0) AS x
  FROM population p
  LEFT JOIN (SELECT user_id, SUM(CASE WHEN post = 1 THEN CAST(COALESCE(value, 1) AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS y, SUM(CASE WHEN post = 0 AND ts_us < first_us AND ts_us >= first_us - 1209600000000 THEN CAST(COALESCE(value, 1) AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS x FROM m3_events GROUP BY user_id) e ON e.user_id = p.user_id
),
m3_cap AS (
  SELECT 20.0 AS y_hi, 1.0 AS y_lo
),
m3_capped AS (
  SELECT u.user_id, u.variant, u.segment, u.x, CASE WHEN c.y_lo IS NOT NULL AND u.y < c.y_lo THEN c.y_lo ELSE CASE WHEN c.y_hi IS NOT NULL AND u.y > c.y_hi THEN c.y_hi ELSE u.y END END AS y
  FROM m3_user u CROSS JOIN m3_cap c
),
m4_events AS (
  SELECT user_id, metric_name, value, ts_us, first_us, CASE WHEN ts_us >= first_us + 0 THEN 1 ELSE 0 END AS post
  FROM events_in WHERE metric_name IN ('revenue_pct')
),
m4_user AS (
  SELECT p.user_id, p.variant, p.segment, COALESCE(e.y, 0) AS y, COALESCE(e.x, 0) AS x
  FROM population p
  LEFT JOIN (SELECT user_id, SUM(CASE WHEN post = 1 THEN CAST(COALESCE(value, 1) AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS y, SUM(CASE WHEN post = 0 AND ts_us < first_us AND ts_us >= first_us - 1209600000000 THEN CAST(COALESCE(value, 1) AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS x FROM m4_events GROUP BY user_id) e ON e.user_id = p.user_id
),
m4_cap AS (
  SELECT (SELECT MIN(v) FROM (SELECT y AS v, ROW_NUMBER() OVER (ORDER BY y) AS rn, COUNT(*) OVER () AS n FROM m4_user) r WHERE rn >= CAST(CEIL(0.9 * n) AS BIGINT)) AS y_hi,
    (SELECT CAST(NULL AS DOUBLE)) AS y_lo
),
m4_capped AS (
  SELECT u.user_id, u.variant, u.segment, u.x, CASE WHEN c.y_lo IS NOT NULL AND u.y < c.y_lo THEN c.y_lo ELSE CASE WHEN c.y_hi IS NOT NULL AND u.y > c.y_hi THEN c.y_hi ELSE u.y END END AS y
  FROM m4_user u CROSS JOIN m4_cap c
),
m5_events AS (
  SELECT user_id, metric_name, value, ts_us, first_us, CASE WHEN ts_us >= first_us + 0 THEN 1 ELSE 0 END AS post
  FROM events_in WHERE metric_name IN ('revenue', 'click')
),
m5_user AS (
  SELECT p.user_id, p.variant, p.segment, COALESCE(e.y, 0) AS y, COALESCE(e.x, 0) AS x
  FROM population p
  LEFT JOIN (SELECT user_id, SUM(CASE WHEN post = 1 AND metric_name = 'revenue' THEN CAST(COALESCE(value, 1) AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS y, SUM(CASE WHEN post = 1 AND metric_name = 'click' THEN CAST(COALESCE(value, 1) AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS x FROM m5_events GROUP BY user_id) e ON e.user_id = p.user_id
),
m5_capped AS (
  SELECT * FROM m5_user
),
m6_events AS (
  SELECT user_id, metric_name, value, ts_us, first_us, CASE WHEN ts_us >= first_us + 0 THEN 1 ELSE 0 END AS post
  FROM events_in WHERE metric_name IN ('latency')
),
m6_ranked AS (
  SELECT p.variant, p.segment, e.user_id, e.value, ROW_NUMBER() OVER (PARTITION BY p.variant, p.segment ORDER BY e.value) AS rn, COUNT(*) OVER (PARTITION BY p.variant, p.segment) AS cnt
  FROM m6_events e JOIN population p ON p.user_id = e.user_id
  WHERE e.post = 1 AND e.value IS NOT NULL
),
m7_events AS (
  SELECT user_id, metric_name, value, ts_us, first_us, CASE WHEN ts_us >= first_us + 0 THEN 1 ELSE 0 END AS post
  FROM events_in WHERE metric_name IN ('latency_p50')
),
m7_ranked AS (
  SELECT p.variant, p.segment, e.user_id, e.value, ROW_NUMBER() OVER (PARTITION BY p.variant, p.segment ORDER BY e.value) AS rn, COUNT(*) OVER (PARTITION BY p.variant, p.segment) AS cnt
  FROM m7_events e JOIN population p ON p.user_id = e.user_id
  WHERE e.post = 1 AND e.value IS NOT NULL
)
SELECT metric, variant, segment, n, sum_y, sum_y2, sum_x, sum_x2, sum_xy, q_n, q_value FROM (
SELECT 'click' AS metric, variant, segment, COUNT(*) AS n, SUM(CAST(y AS DOUBLE)) AS sum_y, SUM(CAST(y AS DOUBLE) * CAST(y AS DOUBLE)) AS sum_y2, SUM(CAST(x AS DOUBLE)) AS sum_x, SUM(CAST(x AS DOUBLE) * CAST(x AS DOUBLE)) AS sum_x2, SUM(CAST(x AS DOUBLE) * CAST(y AS DOUBLE)) AS sum_xy, 0 AS q_n, CAST(NULL AS DOUBLE) AS q_value
  FROM m0_capped GROUP BY variant, segment
UNION ALL
SELECT 'click_count' AS metric, variant, segment, COUNT(*) AS n, SUM(CAST(y AS DOUBLE)) AS sum_y, SUM(CAST(y AS DOUBLE) * CAST(y AS DOUBLE)) AS sum_y2, SUM(CAST(x AS DOUBLE)) AS sum_x, SUM(CAST(x AS DOUBLE) * CAST(x AS DOUBLE)) AS sum_x2, SUM(CAST(x AS DOUBLE) * CAST(y AS DOUBLE)) AS sum_xy, 0 AS q_n, CAST(NULL AS DOUBLE) AS q_value
  FROM m1_capped GROUP BY variant, segment
UNION ALL
SELECT 'revenue' AS metric, variant, segment, COUNT(*) AS n, SUM(CAST(y AS DOUBLE)) AS sum_y, SUM(CAST(y AS DOUBLE) * CAST(y AS DOUBLE)) AS sum_y2, SUM(CAST(x AS DOUBLE)) AS sum_x, SUM(CAST(x AS DOUBLE) * CAST(x AS DOUBLE)) AS sum_x2, SUM(CAST(x AS DOUBLE) * CAST(y AS DOUBLE)) AS sum_xy, 0 AS q_n, CAST(NULL AS DOUBLE) AS q_value
  FROM m2_capped GROUP BY variant, segment
UNION ALL
SELECT 'revenue_abs' AS metric, variant, segment, COUNT(*) AS n, SUM(CAST(y AS DOUBLE)) AS sum_y, SUM(CAST(y AS DOUBLE) * CAST(y AS DOUBLE)) AS sum_y2, SUM(CAST(x AS DOUBLE)) AS sum_x, SUM(CAST(x AS DOUBLE) * CAST(x AS DOUBLE)) AS sum_x2, SUM(CAST(x AS DOUBLE) * CAST(y AS DOUBLE)) AS sum_xy, 0 AS q_n, CAST(NULL AS DOUBLE) AS q_value
  FROM m3_capped GROUP BY variant, segment
UNION ALL
SELECT 'revenue_pct' AS metric, variant, segment, COUNT(*) AS n, SUM(CAST(y AS DOUBLE)) AS sum_y, SUM(CAST(y AS DOUBLE) * CAST(y AS DOUBLE)) AS sum_y2, SUM(CAST(x AS DOUBLE)) AS sum_x, SUM(CAST(x AS DOUBLE) * CAST(x AS DOUBLE)) AS sum_x2, SUM(CAST(x AS DOUBLE) * CAST(y AS DOUBLE)) AS sum_xy, 0 AS q_n, CAST(NULL AS DOUBLE) AS q_value
  FROM m4_capped GROUP BY variant, segment
UNION ALL
SELECT 'rev_per_click' AS metric, variant, segment, COUNT(*) AS n, SUM(CAST(y AS DOUBLE)) AS sum_y, SUM(CAST(y AS DOUBLE) * CAST(y AS DOUBLE)) AS sum_y2, SUM(CAST(x AS DOUBLE)) AS sum_x, SUM(CAST(x AS DOUBLE) * CAST(x AS DOUBLE)) AS sum_x2, SUM(CAST(x AS DOUBLE) * CAST(y AS DOUBLE)) AS sum_xy, 0 AS q_n, CAST(NULL AS DOUBLE) AS q_value
  FROM m5_capped GROUP BY variant, segment
UNION ALL
SELECT 'latency' AS metric, variant, segment, COUNT(DISTINCT user_id) AS n, CAST(NULL AS DOUBLE) AS sum_y, CAST(NULL AS DOUBLE) AS sum_y2, CAST(NULL AS DOUBLE) AS sum_x, CAST(NULL AS DOUBLE) AS sum_x2, CAST(NULL AS DOUBLE) AS sum_xy, COUNT(*) AS q_n, MIN(CASE WHEN rn = CAST(CEIL(0.9 * cnt) AS BIGINT) THEN CAST(value AS DOUBLE) END) AS q_value
  FROM m6_ranked GROUP BY variant, segment
UNION ALL
SELECT 'latency_p50' AS metric, variant, segment, COUNT(DISTINCT user_id) AS n, CAST(NULL AS DOUBLE) AS sum_y, CAST(NULL AS DOUBLE) AS sum_y2, CAST(NULL AS DOUBLE) AS sum_x, CAST(NULL AS DOUBLE) AS sum_x2, CAST(NULL AS DOUBLE) AS sum_xy, COUNT(*) AS q_n, MIN(CASE WHEN rn = CAST(CEIL(0.5 * cnt) AS BIGINT) THEN CAST(value AS DOUBLE) END) AS q_value
  FROM m7_ranked GROUP BY variant, segment
) s
ORDER BY metric, variant, segment;

-- daily
WITH exposures AS (
  SELECT "user_id" AS user_id, MIN(epoch_us(CAST("ts" AS TIMESTAMP))) AS first_us
  FROM ab_experiment_results
  WHERE "experiment_id" = 1 AND "event_type" = 'exposure' AND epoch_us(CAST("ts" AS TIMESTAMP)) < 1768089600000000
  GROUP BY "user_id"
),
population AS (
  SELECT a."user_id" AS user_id, a."variant_id" AS variant, e.first_us, '(all)' AS segment
  FROM ab_user_assignments a
  JOIN exposures e ON e.user_id = a."user_id"
  WHERE a."experiment_id" = 1
)
SELECT (first_us // 86400000000) AS day, variant, COUNT(*) AS users FROM population GROUP BY (first_us // 86400000000), variant ORDER BY day, variant;
