-- Share of each monthly acquisition cohort buying again k months after its first month
WITH active AS (
  SELECT DISTINCT customer_id, trunc(CAST(invoice_date AS DATE), 'MM') AS month
  FROM transactions_clean
  WHERE quantity > returned_quantity
),
cohorts AS (
  SELECT customer_id, MIN(month) AS cohort FROM active GROUP BY customer_id
),
counts AS (
  SELECT c.cohort, CAST(months_between(a.month, c.cohort) AS INT) AS months_since, COUNT(*) AS customers
  FROM active AS a JOIN cohorts AS c ON a.customer_id = c.customer_id
  GROUP BY c.cohort, CAST(months_between(a.month, c.cohort) AS INT)
)
SELECT
  date_format(counts.cohort, 'yyyy-MM') AS cohort,
  counts.months_since,
  counts.customers,
  counts.customers / sizes.customers AS retention
FROM counts
JOIN counts AS sizes ON sizes.cohort = counts.cohort AND sizes.months_since = 0
WHERE counts.months_since <= 12
ORDER BY cohort, months_since
