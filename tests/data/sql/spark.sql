-- stats
WITH exposures AS (
  SELECT `user_id` AS user_id, MIN(unix_micros(CAST(`ts` AS TIMESTAMP))) AS first_key
  FROM ab_experiment_results
  WHERE `experiment_id` = 1 AND `event_type` = 'exposure' AND unix_micros(CAST(`ts` AS TIMESTAMP)) < 1768089600000000
  GROUP BY `user_id`
),
population AS (
  SELECT a.`user_id` AS user_id, a.`variant_id` AS variant, e.first_key, e.first_key AS first_us, COALESCE(from_json(a.`attributes`, 'map<string,string>')['country'], '(none)') AS segment, e.first_key + 172800000000 AS b0, e.first_key + 3600000000 AS b1, e.first_key + 262800000000 AS b2, e.first_key + 259200000000 AS b3, e.first_key + -1209600000000 AS b4
  FROM ab_user_assignments a
  JOIN exposures e ON e.user_id = a.`user_id`
  WHERE a.`experiment_id` = 1
),
events_in AS (
  SELECT ev.`user_id` AS user_id, p.variant, p.segment, ev.`metric_name` AS metric_name, ev.`value` AS value, unix_micros(CAST(ev.`ts` AS TIMESTAMP)) AS ts_key, p.first_key, p.b0, p.b1, p.b2, p.b3, p.b4
  FROM population p
  JOIN ab_experiment_results ev ON ev.`user_id` = p.user_id
  WHERE ev.`experiment_id` = 1 AND ev.`event_type` = 'conversion' AND ev.`metric_name` IN ('click', 'click_count', 'revenue', 'revenue_abs', 'revenue_pct', 'latency', 'latency_p50', 'latency_mean') AND unix_micros(CAST(ev.`ts` AS TIMESTAMP)) < 1768089600000000
),
pop_n AS (
  SELECT variant, segment, COUNT(*) AS n FROM population GROUP BY variant, segment
),
m0_events AS (
  SELECT user_id, variant, segment, metric_name, value, ts_key, CASE WHEN ts_key >= first_key THEN 1 ELSE 0 END AS post, CASE WHEN ts_key < first_key AND ts_key >= b4 THEN 1 ELSE 0 END AS pre
  FROM events_in WHERE metric_name IN ('click')
),
m0_eu AS (
  SELECT user_id, MIN(variant) AS variant, MIN(segment) AS segment, MAX(CASE WHEN post = 1 THEN 1 ELSE 0 END) AS y, MAX(CASE WHEN pre = 1 THEN 1 ELSE 0 END) AS x, MIN(CASE WHEN post = 1 THEN (ts_key div 86400000000) END) AS first_day FROM m0_events GROUP BY user_id
),
m1_events AS (
  SELECT user_id, variant, segment, metric_name, value, ts_key, CASE WHEN ts_key >= first_key AND ts_key < b0 THEN 1 ELSE 0 END AS post, CASE WHEN ts_key < first_key AND ts_key >= b4 THEN 1 ELSE 0 END AS pre
  FROM events_in WHERE metric_name IN ('click_count')
),
m1_eu AS (
  SELECT user_id, MIN(variant) AS variant, MIN(segment) AS segment, SUM(CASE WHEN post = 1 THEN 1 ELSE 0 END) AS y, SUM(CASE WHEN pre = 1 THEN 1 ELSE 0 END) AS x FROM m1_events GROUP BY user_id
),
m2_events AS (
  SELECT user_id, variant, segment, metric_name, value, ts_key, CASE WHEN ts_key >= b1 AND ts_key < b2 THEN 1 ELSE 0 END AS post, CASE WHEN ts_key < first_key AND ts_key >= b4 THEN 1 ELSE 0 END AS pre
  FROM events_in WHERE metric_name IN ('revenue')
),
m2_eu AS (
  SELECT user_id, MIN(variant) AS variant, MIN(segment) AS segment, SUM(CASE WHEN post = 1 THEN CAST(COALESCE(value, 1) AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS y, SUM(CASE WHEN pre = 1 THEN CAST(COALESCE(value, 1) AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS x FROM m2_events GROUP BY user_id
),
m3_events AS (
  SELECT user_id, variant, segment, metric_name, value, ts_key, CASE WHEN ts_key >= first_key THEN 1 ELSE 0 END AS post, CASE WHEN ts_key < first_key AND ts_key >= b4 THEN 1 ELSE 0 END AS pre
  FROM events_in WHERE metric_name IN ('revenue_abs')
),
m3_eu AS (
  SELECT user_id, MIN(variant) AS variant, MIN(segment) AS segment, SUM(CASE WHEN post = 1 THEN CAST(COALESCE(value, 1) AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS y, SUM(CASE WHEN pre = 1 THEN CAST(COALESCE(value, 1) AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS x FROM m3_events GROUP BY user_id
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
m4_events AS (
  SELECT user_id, variant, segment, metric_name, value, ts_key, CASE WHEN ts_key >= first_key THEN 1 ELSE 0 END AS post, CASE WHEN ts_key < first_key AND ts_key >= b4 THEN 1 ELSE 0 END AS pre
  FROM events_in WHERE metric_name IN ('revenue_pct')
),
m4_eu AS (
  SELECT user_id, MIN(variant) AS variant, MIN(segment) AS segment, SUM(CASE WHEN post = 1 THEN CAST(COALESCE(value, 1) AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS y, SUM(CASE WHEN pre = 1 THEN CAST(COALESCE(value, 1) AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS x FROM m4_events GROUP BY user_id
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
m5_events AS (
  SELECT user_id, variant, segment, metric_name, value, ts_key, CASE WHEN ts_key >= first_key THEN 1 ELSE 0 END AS post
  FROM events_in WHERE metric_name IN ('revenue', 'click')
),
m5_eu AS (
  SELECT user_id, MIN(variant) AS variant, MIN(segment) AS segment, SUM(CASE WHEN post = 1 AND metric_name = 'revenue' THEN CAST(COALESCE(value, 1) AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS y, SUM(CASE WHEN post = 1 AND metric_name = 'click' THEN CAST(COALESCE(value, 1) AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS x FROM m5_events GROUP BY user_id
),
m6_events AS (
  SELECT user_id, variant, segment, metric_name, value, ts_key, CASE WHEN ts_key >= first_key THEN 1 ELSE 0 END AS post
  FROM events_in WHERE metric_name IN ('latency')
),
m6_ranked AS (
  SELECT variant, segment, user_id, value, ROW_NUMBER() OVER (PARTITION BY variant, segment ORDER BY value) AS rn, COUNT(*) OVER (PARTITION BY variant, segment ORDER BY value ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS cnt
  FROM m6_events WHERE post = 1 AND value IS NOT NULL
),
m7_events AS (
  SELECT user_id, variant, segment, metric_name, value, ts_key, CASE WHEN ts_key >= first_key THEN 1 ELSE 0 END AS post
  FROM events_in WHERE metric_name IN ('latency_p50')
),
m7_ranked AS (
  SELECT variant, segment, user_id, value, ROW_NUMBER() OVER (PARTITION BY variant, segment ORDER BY value) AS rn, COUNT(*) OVER (PARTITION BY variant, segment ORDER BY value ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS cnt
  FROM m7_events WHERE post = 1 AND value IS NOT NULL
),
m8_events AS (
  SELECT user_id, variant, segment, metric_name, value, ts_key, CASE WHEN ts_key >= first_key AND ts_key < b3 THEN 1 ELSE 0 END AS post
  FROM events_in WHERE metric_name IN ('latency_mean')
),
m8_eu AS (
  SELECT user_id, MIN(variant) AS variant, MIN(segment) AS segment, SUM(CASE WHEN post = 1 THEN CAST(COALESCE(value, 1) AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS y, SUM(CASE WHEN post = 1 THEN CAST(1 AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS x FROM m8_events GROUP BY user_id
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
  SELECT `user_id` AS user_id, MIN(unix_micros(CAST(`ts` AS TIMESTAMP))) AS first_key
  FROM ab_experiment_results
  WHERE `experiment_id` = 1 AND `event_type` = 'exposure' AND unix_micros(CAST(`ts` AS TIMESTAMP)) < 1768089600000000
  GROUP BY `user_id`
),
population AS (
  SELECT a.`user_id` AS user_id, a.`variant_id` AS variant, e.first_key, e.first_key AS first_us, '(all)' AS segment
  FROM ab_user_assignments a
  JOIN exposures e ON e.user_id = a.`user_id`
  WHERE a.`experiment_id` = 1
)
SELECT (first_us div 86400000000) AS day, variant, COUNT(*) AS users FROM population GROUP BY (first_us div 86400000000), variant ORDER BY day, variant;
