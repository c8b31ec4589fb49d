-- High-value customers (top 20% by CLV) most at risk, by value at risk, with the first churn
-- reason and the strongest actionable retention lever in words
SELECT
  p.customer_id,
  p.country,
  p.rfm_segment,
  p.churn_probability,
  p.risk_band,
  v.clv,
  v.value_tier,
  v.clv * p.churn_probability AS value_at_risk,
  p.churn_reason_text AS why_at_risk,
  p.retention_lever_text AS strongest_lever
FROM churn_predictions AS p
JOIN customer_cltv AS v ON v.customer_id = p.customer_id
WHERE p.churn_probability >= 0.4 AND v.value_tier <> 'rest'
ORDER BY value_at_risk DESC, p.customer_id
LIMIT 200
