-- Share of predicted CLV held by the top 1 / 5 / 20 % of customers (by CLV rank)
WITH ranked AS (
  SELECT clv, clv_rank, COUNT(*) OVER () AS n FROM customer_cltv
),
tiers AS (
  SELECT * FROM VALUES (0.01, 'top 1%'), (0.05, 'top 5%'), (0.20, 'top 20%') AS t(top_share, label)
)
SELECT
  tiers.label AS `group`,
  tiers.top_share,
  SUM(CASE WHEN ranked.clv_rank <= ceil(tiers.top_share * ranked.n) THEN ranked.clv ELSE 0 END)
    / SUM(ranked.clv) AS clv_share
FROM tiers CROSS JOIN ranked
GROUP BY tiers.label, tiers.top_share
ORDER BY tiers.top_share
