-- Per RFM segment: customers, revenue so far, predicted CLV and churn risk
SELECT
  f.rfm_segment,
  COUNT(*) AS customers,
  SUM(f.monetary_total) AS revenue,
  SUM(v.clv) AS predicted_clv,
  AVG(p.churn_probability) AS mean_churn_probability,
  AVG(CASE WHEN p.risk_band = 'high' THEN 1.0 ELSE 0.0 END) AS high_risk_share
FROM customer_features_current AS f
JOIN churn_predictions AS p ON p.customer_id = f.customer_id
LEFT JOIN customer_cltv AS v ON v.customer_id = f.customer_id
GROUP BY f.rfm_segment
ORDER BY revenue DESC
