-- Headline KPIs over the gold tables
SELECT
  (SELECT SUM(revenue) FROM transactions_clean WHERE quantity > returned_quantity) AS revenue,
  (SELECT COUNT(DISTINCT customer_id) FROM transactions_clean WHERE quantity > returned_quantity) AS customers,
  (SELECT COUNT(DISTINCT invoice) FROM transactions_clean WHERE quantity > returned_quantity) AS invoices,
  (SELECT SUM(clv) FROM customer_cltv) AS predicted_clv_total,
  (SELECT AVG(churn_probability) FROM churn_predictions) AS mean_churn_probability,
  (SELECT COUNT(*) FROM churn_predictions WHERE risk_band = 'high') AS high_risk_customers
