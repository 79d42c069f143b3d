-- stats
WITH event_scan AS (
  SELECT "user_id" AS user_id, epoch_us(CAST("ts" AS TIMESTAMP)) AS ts_key, "value" AS value, CAST(CASE WHEN "event_type" = 'exposure' THEN -1 ELSE CASE "metric_name" WHEN 'click' THEN 0 WHEN 'click_count' THEN 1 WHEN 'revenue' THEN 2 WHEN 'revenue_abs' THEN 3 WHEN 'revenue_pct' THEN 4 WHEN 'latency' THEN 5 WHEN 'latency_p50' THEN 6 WHEN 'latency_mean' THEN 7 END END AS SMALLINT) AS code
  FROM ab_experiment_results
  WHERE "experiment_id" = 1 AND ("event_type" = 'exposure' OR ("event_type" = 'conversion' AND "metric_name" IN ('click', 'click_count', 'revenue', 'revenue_abs', 'revenue_pct', 'latency', 'latency_p50', 'latency_mean'))) AND epoch_us(CAST("ts" AS TIMESTAMP)) < 1768089600000000
),
exposures AS (
  SELECT user_id, MIN(ts_key) AS first_key FROM event_scan WHERE code = -1 GROUP BY user_id
),
population AS (
  SELECT ROW_NUMBER() OVER () AS user_id, a."user_id" AS source_user_id, a."variant_id" AS variant, e.first_key, e.first_key AS first_us, COALESCE(json_extract_string(a."attributes", '/country'), '(none)') AS segment, e.first_key + 172800000000 AS b0, e.first_key + 3600000000 AS b1, e.first_key + 262800000000 AS b2, e.first_key + 259200000000 AS b3, e.first_key + -1209600000000 AS b4
  FROM ab_user_assignments a
  JOIN exposures e ON e.user_id = a."user_id"
  WHERE a."experiment_id" = 1
),
events_in AS (
  SELECT p.user_id AS user_id, p.variant, p.segment, ev.code AS metric_name, ev.value, ev.ts_key, p.first_key, p.b0, p.b1, p.b2, p.b3, p.b4
  FROM population p
  JOIN event_scan ev ON ev.user_id = p.source_user_id
  WHERE ev.code >= 0
),
pop_n AS (
  SELECT variant, segment, COUNT(*) AS n FROM population GROUP BY variant, segment
),
users_all AS (
  SELECT user_id, variant, segment, MAX(CASE WHEN metric_name IN (0) AND ts_key >= first_key THEN 1 ELSE 0 END) AS y0, MAX(CASE WHEN metric_name IN (0) AND ts_key < first_key AND ts_key >= b4 THEN 1 ELSE 0 END) AS x0, MIN(CASE WHEN metric_name IN (0) AND ts_key >= first_key THEN (ts_key // 86400000000) END) AS fd0, SUM(CASE WHEN metric_name IN (1) AND ts_key >= first_key AND ts_key < b0 THEN 1 ELSE 0 END) AS y1, SUM(CASE WHEN metric_name IN (1) AND ts_key < first_key AND ts_key >= b4 THEN 1 ELSE 0 END) AS x1, SUM(CASE WHEN metric_name IN (2) AND ts_key >= b1 AND ts_key < b2 THEN CAST(COALESCE(value, 1) AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS y2, SUM(CASE WHEN metric_name IN (2) AND ts_key < first_key AND ts_key >= b4 THEN CAST(COALESCE(value, 1) AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS x2, SUM(CASE WHEN metric_name IN (3) AND ts_key >= first_key THEN CAST(COALESCE(value, 1) AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS y3, SUM(CASE WHEN metric_name IN (3) AND ts_key < first_key AND ts_key >= b4 THEN CAST(COALESCE(value, 1) AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS x3, SUM(CASE WHEN metric_name IN (4) AND ts_key >= first_key THEN CAST(COALESCE(value, 1) AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS y4, SUM(CASE WHEN metric_name IN (4) AND ts_key < first_key AND ts_key >= b4 THEN CAST(COALESCE(value, 1) AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS x4, SUM(CASE WHEN ts_key >= first_key AND metric_name = 2 THEN CAST(COALESCE(value, 1) AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS y5, SUM(CASE WHEN ts_key >= first_key AND metric_name = 0 THEN CAST(COALESCE(value, 1) AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS x5, SUM(CASE WHEN metric_name IN (7) AND ts_key >= first_key AND ts_key < b3 THEN CAST(COALESCE(value, 1) AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS y8, SUM(CASE WHEN metric_name IN (7) AND ts_key >= first_key AND ts_key < b3 THEN CAST(1 AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS x8
  FROM events_in GROUP BY user_id, variant, segment
),
m0_events AS NOT MATERIALIZED (
  SELECT user_id, variant, segment, metric_name, value, ts_key, CASE WHEN ts_key >= first_key THEN 1 ELSE 0 END AS post, CASE WHEN ts_key < first_key AND ts_key >= b4 THEN 1 ELSE 0 END AS pre
  FROM events_in WHERE metric_name IN (0)
),
m0_eu AS (
  SELECT user_id, variant, segment, y0 AS y, x0 AS x, fd0 AS first_day FROM users_all
),
m1_events AS NOT MATERIALIZED (
  SELECT user_id, variant, segment, metric_name, value, ts_key, CASE WHEN ts_key >= first_key AND ts_key < b0 THEN 1 ELSE 0 END AS post, CASE WHEN ts_key < first_key AND ts_key >= b4 THEN 1 ELSE 0 END AS pre
  FROM events_in WHERE metric_name IN (1)
),
m1_eu AS (
  SELECT user_id, variant, segment, y1 AS y, x1 AS x FROM users_all
),
m2_events AS NOT MATERIALIZED (
  SELECT user_id, variant, segment, metric_name, value, ts_key, CASE WHEN ts_key >= b1 AND ts_key < b2 THEN 1 ELSE 0 END AS post, CASE WHEN ts_key < first_key AND ts_key >= b4 THEN 1 ELSE 0 END AS pre
  FROM events_in WHERE metric_name IN (2)
),
m2_eu AS (
  SELECT user_id, variant, segment, y2 AS y, x2 AS x FROM users_all
),
m3_events AS NOT MATERIALIZED (
  SELECT user_id, variant, segment, metric_name, value, ts_key, CASE WHEN ts_key >= first_key THEN 1 ELSE 0 END AS post, CASE WHEN ts_key < first_key AND ts_key >= b4 THEN 1 ELSE 0 END AS pre
  FROM events_in WHERE metric_name IN (3)
),
m3_eu AS (
  SELECT user_id, variant, segment, y3 AS y, x3 AS x FROM users_all
),
m3_user AS (
  SELECT p.user_id, p.variant, p.segment, COALESCE(e.y, 0) AS y, COALESCE(e.x, 0) AS x
  FROM population p LEFT JOIN m3_eu e ON e.user_id = p.user_id
),
m3_cap AS (
  SELECT CAST(20.0 AS DOUBLE) AS y_hi, CAST(1.0 AS DOUBLE) AS y_lo
),
m3_capped AS (
  SELECT u.user_id, u.variant, u.segment, u.x, CASE WHEN c.y_lo IS NOT NULL AND u.y < c.y_lo THEN c.y_lo ELSE CASE WHEN c.y_hi IS NOT NULL AND u.y > c.y_hi THEN c.y_hi ELSE u.y END END AS y
  FROM m3_user u CROSS JOIN m3_cap c
),
m4_events AS NOT MATERIALIZED (
  SELECT user_id, variant, segment, metric_name, value, ts_key, CASE WHEN ts_key >= first_key THEN 1 ELSE 0 END AS post, CASE WHEN ts_key < first_key AND ts_key >= b4 THEN 1 ELSE 0 END AS pre
  FROM events_in WHERE metric_name IN (4)
),
m4_eu AS (
  SELECT user_id, variant, segment, y4 AS y, x4 AS x FROM users_all
),
m4_user AS (
  SELECT p.user_id, p.variant, p.segment, COALESCE(e.y, 0) AS y, COALESCE(e.x, 0) AS x
  FROM population p LEFT JOIN m4_eu e ON e.user_id = p.user_id
),
m4_cap AS (
  SELECT (SELECT MIN(v) FROM (SELECT y AS v, ROW_NUMBER() OVER (ORDER BY y) AS rn, COUNT(*) OVER () AS n FROM m4_user) r WHERE rn >= CAST(CEIL(0.9 * n) AS BIGINT)) AS y_hi,
    (SELECT CAST(NULL AS DOUBLE)) AS y_lo
),
m4_capped AS (
  SELECT u.user_id, u.variant, u.segment, u.x, CASE WHEN c.y_lo IS NOT NULL AND u.y < c.y_lo THEN c.y_lo ELSE CASE WHEN c.y_hi IS NOT NULL AND u.y > c.y_hi THEN c.y_hi ELSE u.y END END AS y
  FROM m4_user u CROSS JOIN m4_cap c
),
m5_events AS NOT MATERIALIZED (
  SELECT user_id, variant, segment, metric_name, value, ts_key, CASE WHEN ts_key >= first_key THEN 1 ELSE 0 END AS post
  FROM events_in WHERE metric_name IN (2, 0)
),
m5_eu AS (
  SELECT user_id, variant, segment, y5 AS y, x5 AS x FROM users_all
),
m6_events AS NOT MATERIALIZED (
  SELECT user_id, variant, segment, metric_name, value, ts_key, CASE WHEN ts_key >= first_key THEN 1 ELSE 0 END AS post
  FROM events_in WHERE metric_name IN (5)
),
m6_ranked AS (
  SELECT variant, segment, user_id, value, ROW_NUMBER() OVER (PARTITION BY variant, segment ORDER BY value) AS rn, COUNT(*) OVER (PARTITION BY variant, segment ORDER BY value ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS cnt
  FROM m6_events WHERE post = 1 AND value IS NOT NULL
),
m7_events AS NOT MATERIALIZED (
  SELECT user_id, variant, segment, metric_name, value, ts_key, CASE WHEN ts_key >= first_key THEN 1 ELSE 0 END AS post
  FROM events_in WHERE metric_name IN (6)
),
m7_ranked AS (
  SELECT variant, segment, user_id, value, ROW_NUMBER() OVER (PARTITION BY variant, segment ORDER BY value) AS rn, COUNT(*) OVER (PARTITION BY variant, segment ORDER BY value ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS cnt
  FROM m7_events WHERE post = 1 AND value IS NOT NULL
),
m8_events AS NOT MATERIALIZED (
  SELECT user_id, variant, segment, metric_name, value, ts_key, CASE WHEN ts_key >= first_key AND ts_key < b3 THEN 1 ELSE 0 END AS post
  FROM events_in WHERE metric_name IN (7)
),
m8_eu AS (
  SELECT user_id, variant, segment, y8 AS y, x8 AS x FROM users_all
)
SELECT metric, variant, segment, n, sum_y, sum_y2, sum_x, sum_x2, sum_xy, q_n, q_value, q_lower, q_upper FROM (
SELECT 'click' AS metric, c.variant, c.segment, c.n, COALESCE(s.sum_y, CAST(0 AS DOUBLE)) AS sum_y, COALESCE(s.sum_y2, CAST(0 AS DOUBLE)) AS sum_y2, COALESCE(s.sum_x, CAST(0 AS DOUBLE)) AS sum_x, COALESCE(s.sum_x2, CAST(0 AS DOUBLE)) AS sum_x2, COALESCE(s.sum_xy, CAST(0 AS DOUBLE)) AS sum_xy, 0 AS q_n, CAST(NULL AS DOUBLE) AS q_value, CAST(NULL AS DOUBLE) AS q_lower, CAST(NULL AS DOUBLE) AS q_upper
  FROM pop_n c LEFT JOIN (SELECT variant, segment, SUM(CAST(y AS DOUBLE)) AS sum_y, SUM(CAST(y AS DOUBLE) * CAST(y AS DOUBLE)) AS sum_y2, SUM(CAST(x AS DOUBLE)) AS sum_x, SUM(CAST(x AS DOUBLE) * CAST(x AS DOUBLE)) AS sum_x2, SUM(CAST(x AS DOUBLE) * CAST(y AS DOUBLE)) AS sum_xy FROM m0_eu GROUP BY variant, segment) s ON s.variant = c.variant AND s.segment = c.segment
UNION ALL
SELECT 'click_count' AS metric, c.variant, c.segment, c.n, COALESCE(s.sum_y, CAST(0 AS DOUBLE)) AS sum_y, COALESCE(s.sum_y2, CAST(0 AS DOUBLE)) AS sum_y2, COALESCE(s.sum_x, CAST(0 AS DOUBLE)) AS sum_x, COALESCE(s.sum_x2, CAST(0 AS DOUBLE)) AS sum_x2, COALESCE(s.sum_xy, CAST(0 AS DOUBLE)) AS sum_xy, 0 AS q_n, CAST(NULL AS DOUBLE) AS q_value, CAST(NULL AS DOUBLE) AS q_lower, CAST(NULL AS DOUBLE) AS q_upper
  FROM pop_n c LEFT JOIN (SELECT variant, segment, SUM(CAST(y AS DOUBLE)) AS sum_y, SUM(CAST(y AS DOUBLE) * CAST(y AS DOUBLE)) AS sum_y2, SUM(CAST(x AS DOUBLE)) AS sum_x, SUM(CAST(x AS DOUBLE) * CAST(x AS DOUBLE)) AS sum_x2, SUM(CAST(x AS DOUBLE) * CAST(y AS DOUBLE)) AS sum_xy FROM m1_eu GROUP BY variant, segment) s ON s.variant = c.variant AND s.segment = c.segment
UNION ALL
SELECT 'revenue' AS metric, c.variant, c.segment, c.n, COALESCE(s.sum_y, CAST(0 AS DOUBLE)) AS sum_y, COALESCE(s.sum_y2, CAST(0 AS DOUBLE)) AS sum_y2, COALESCE(s.sum_x, CAST(0 AS DOUBLE)) AS sum_x, COALESCE(s.sum_x2, CAST(0 AS DOUBLE)) AS sum_x2, COALESCE(s.sum_xy, CAST(0 AS DOUBLE)) AS sum_xy, 0 AS q_n, CAST(NULL AS DOUBLE) AS q_value, CAST(NULL AS DOUBLE) AS q_lower, CAST(NULL AS DOUBLE) AS q_upper
  FROM pop_n c LEFT JOIN (SELECT variant, segment, SUM(CAST(y AS DOUBLE)) AS sum_y, SUM(CAST(y AS DOUBLE) * CAST(y AS DOUBLE)) AS sum_y2, SUM(CAST(x AS DOUBLE)) AS sum_x, SUM(CAST(x AS DOUBLE) * CAST(x AS DOUBLE)) AS sum_x2, SUM(CAST(x AS DOUBLE) * CAST(y AS DOUBLE)) AS sum_xy FROM m2_eu GROUP BY variant, segment) s ON s.variant = c.variant AND s.segment = c.segment
UNION ALL
SELECT 'revenue_abs' AS metric, variant, segment, COUNT(*) AS n, SUM(CAST(y AS DOUBLE)) AS sum_y, SUM(CAST(y AS DOUBLE) * CAST(y AS DOUBLE)) AS sum_y2, SUM(CAST(x AS DOUBLE)) AS sum_x, SUM(CAST(x AS DOUBLE) * CAST(x AS DOUBLE)) AS sum_x2, SUM(CAST(x AS DOUBLE) * CAST(y AS DOUBLE)) AS sum_xy, 0 AS q_n, CAST(NULL AS DOUBLE) AS q_value, CAST(NULL AS DOUBLE) AS q_lower, CAST(NULL AS DOUBLE) AS q_upper
  FROM m3_capped GROUP BY variant, segment
UNION ALL
SELECT 'revenue_pct' AS metric, variant, segment, COUNT(*) AS n, SUM(CAST(y AS DOUBLE)) AS sum_y, SUM(CAST(y AS DOUBLE) * CAST(y AS DOUBLE)) AS sum_y2, SUM(CAST(x AS DOUBLE)) AS sum_x, SUM(CAST(x AS DOUBLE) * CAST(x AS DOUBLE)) AS sum_x2, SUM(CAST(x AS DOUBLE) * CAST(y AS DOUBLE)) AS sum_xy, 0 AS q_n, CAST(NULL AS DOUBLE) AS q_value, CAST(NULL AS DOUBLE) AS q_lower, CAST(NULL AS DOUBLE) AS q_upper
  FROM m4_capped GROUP BY variant, segment
UNION ALL
SELECT 'rev_per_click' AS metric, c.variant, c.segment, c.n, COALESCE(s.sum_y, CAST(0 AS DOUBLE)) AS sum_y, COALESCE(s.sum_y2, CAST(0 AS DOUBLE)) AS sum_y2, COALESCE(s.sum_x, CAST(0 AS DOUBLE)) AS sum_x, COALESCE(s.sum_x2, CAST(0 AS DOUBLE)) AS sum_x2, COALESCE(s.sum_xy, CAST(0 AS DOUBLE)) AS sum_xy, 0 AS q_n, CAST(NULL AS DOUBLE) AS q_value, CAST(NULL AS DOUBLE) AS q_lower, CAST(NULL AS DOUBLE) AS q_upper
  FROM pop_n c LEFT JOIN (SELECT variant, segment, SUM(CAST(y AS DOUBLE)) AS sum_y, SUM(CAST(y AS DOUBLE) * CAST(y AS DOUBLE)) AS sum_y2, SUM(CAST(x AS DOUBLE)) AS sum_x, SUM(CAST(x AS DOUBLE) * CAST(x AS DOUBLE)) AS sum_x2, SUM(CAST(x AS DOUBLE) * CAST(y AS DOUBLE)) AS sum_xy FROM m5_eu GROUP BY variant, segment) s ON s.variant = c.variant AND s.segment = c.segment
UNION ALL
SELECT 'latency' AS metric, c.variant, c.segment, c.n, CAST(NULL AS DOUBLE) AS sum_y, CAST(NULL AS DOUBLE) AS sum_y2, CAST(NULL AS DOUBLE) AS sum_x, CAST(NULL AS DOUBLE) AS sum_x2, CAST(NULL AS DOUBLE) AS sum_xy, q.q_n, q.q_value, q.q_lower, q.q_upper
  FROM pop_n c JOIN (SELECT variant, segment, COUNT(*) AS q_n, MIN(CASE WHEN rn = CAST(CEIL(0.9 * cnt) AS BIGINT) THEN CAST(value AS DOUBLE) END) AS q_value, MIN(CASE WHEN rn = (CASE WHEN CAST(FLOOR(0.9 * cnt - 1.9599639845400545 * SQRT(cnt * 0.9 * 0.09999999999999998)) AS BIGINT) < 1 THEN 1 WHEN CAST(FLOOR(0.9 * cnt - 1.9599639845400545 * SQRT(cnt * 0.9 * 0.09999999999999998)) AS BIGINT) > cnt THEN cnt ELSE CAST(FLOOR(0.9 * cnt - 1.9599639845400545 * SQRT(cnt * 0.9 * 0.09999999999999998)) AS BIGINT) END) THEN CAST(value AS DOUBLE) END) AS q_lower, MIN(CASE WHEN rn = (CASE WHEN CAST(CEIL(0.9 * cnt + 1.9599639845400545 * SQRT(cnt * 0.9 * 0.09999999999999998)) AS BIGINT) < 1 THEN 1 WHEN CAST(CEIL(0.9 * cnt + 1.9599639845400545 * SQRT(cnt * 0.9 * 0.09999999999999998)) AS BIGINT) > cnt THEN cnt ELSE CAST(CEIL(0.9 * cnt + 1.9599639845400545 * SQRT(cnt * 0.9 * 0.09999999999999998)) AS BIGINT) END) THEN CAST(value AS DOUBLE) END) AS q_upper FROM m6_ranked GROUP BY variant, segment) q ON q.variant = c.variant AND q.segment = c.segment
UNION ALL
SELECT 'latency_p50' AS metric, c.variant, c.segment, c.n, CAST(NULL AS DOUBLE) AS sum_y, CAST(NULL AS DOUBLE) AS sum_y2, CAST(NULL AS DOUBLE) AS sum_x, CAST(NULL AS DOUBLE) AS sum_x2, CAST(NULL AS DOUBLE) AS sum_xy, q.q_n, q.q_value, q.q_lower, q.q_upper
  FROM pop_n c JOIN (SELECT variant, segment, COUNT(*) AS q_n, MIN(CASE WHEN rn = CAST(CEIL(0.5 * cnt) AS BIGINT) THEN CAST(value AS DOUBLE) END) AS q_value, MIN(CASE WHEN rn = (CASE WHEN CAST(FLOOR(0.5 * cnt - 1.9599639845400545 * SQRT(cnt * 0.5 * 0.5)) AS BIGINT) < 1 THEN 1 WHEN CAST(FLOOR(0.5 * cnt - 1.9599639845400545 * SQRT(cnt * 0.5 * 0.5)) AS BIGINT) > cnt THEN cnt ELSE CAST(FLOOR(0.5 * cnt - 1.9599639845400545 * SQRT(cnt * 0.5 * 0.5)) AS BIGINT) END) THEN CAST(value AS DOUBLE) END) AS q_lower, MIN(CASE WHEN rn = (CASE WHEN CAST(CEIL(0.5 * cnt + 1.9599639845400545 * SQRT(cnt * 0.5 * 0.5)) AS BIGINT) < 1 THEN 1 WHEN CAST(CEIL(0.5 * cnt + 1.9599639845400545 * SQRT(cnt * 0.5 * 0.5)) AS BIGINT) > cnt THEN cnt ELSE CAST(CEIL(0.5 * cnt + 1.9599639845400545 * SQRT(cnt * 0.5 * 0.5)) AS BIGINT) END) THEN CAST(value AS DOUBLE) END) AS q_upper FROM m7_ranked GROUP BY variant, segment) q ON q.variant = c.variant AND q.segment = c.segment
UNION ALL
SELECT 'latency_mean' AS metric, c.variant, c.segment, c.n, COALESCE(s.sum_y, CAST(0 AS DOUBLE)) AS sum_y, COALESCE(s.sum_y2, CAST(0 AS DOUBLE)) AS sum_y2, COALESCE(s.sum_x, CAST(0 AS DOUBLE)) AS sum_x, COALESCE(s.sum_x2, CAST(0 AS DOUBLE)) AS sum_x2, COALESCE(s.sum_xy, CAST(0 AS DOUBLE)) AS sum_xy, 0 AS q_n, CAST(NULL AS DOUBLE) AS q_value, CAST(NULL AS DOUBLE) AS q_lower, CAST(NULL AS DOUBLE) AS q_upper
  FROM pop_n c LEFT JOIN (SELECT variant, segment, SUM(CAST(y AS DOUBLE)) AS sum_y, SUM(CAST(y AS DOUBLE) * CAST(y AS DOUBLE)) AS sum_y2, SUM(CAST(x AS DOUBLE)) AS sum_x, SUM(CAST(x AS DOUBLE) * CAST(x AS DOUBLE)) AS sum_x2, SUM(CAST(x AS DOUBLE) * CAST(y AS DOUBLE)) AS sum_xy FROM m8_eu GROUP BY variant, segment) s ON s.variant = c.variant AND s.segment = c.segment
) s
ORDER BY metric, variant, segment;

-- daily
WITH exposures AS (
  SELECT "user_id" AS user_id, MIN(epoch_us(CAST("ts" AS TIMESTAMP))) AS first_key
  FROM ab_experiment_results
  WHERE "experiment_id" = 1 AND "event_type" = 'exposure' AND epoch_us(CAST("ts" AS TIMESTAMP)) < 1768089600000000
  GROUP BY "user_id"
),
population AS (
  SELECT a."user_id" AS user_id, a."variant_id" AS variant, e.first_key, e.first_key AS first_us, '(all)' AS segment
  FROM ab_user_assignments a
  JOIN exposures e ON e.user_id = a."user_id"
  WHERE a."experiment_id" = 1
)
SELECT (first_us // 86400000000) AS day, variant, COUNT(*) AS users FROM population GROUP BY (first_us // 86400000000), variant ORDER BY day, variant;
