-- Net revenue, invoices and active customers per calendar month (lines returned in full are no sale)
SELECT
  date_format(invoice_date, 'yyyy-MM') AS month,
  SUM(revenue) AS revenue,
  COUNT(DISTINCT invoice) AS invoices,
  COUNT(DISTINCT customer_id) AS active_customers
FROM transactions_clean
WHERE quantity > returned_quantity
GROUP BY date_format(invoice_date, 'yyyy-MM')
ORDER BY month
