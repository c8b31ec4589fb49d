-- Churn risk in the ten countries with the most customers
SELECT
  country,
  COUNT(*) AS customers,
  AVG(churn_probability) AS mean_churn_probability,
  AVG(CASE WHEN risk_band = 'high' THEN 1.0 ELSE 0.0 END) AS high_risk_share
FROM churn_predictions
GROUP BY country
ORDER BY customers DESC, country
LIMIT 10
