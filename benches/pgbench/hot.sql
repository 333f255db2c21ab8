\set aid 1
\set ref random(1, 9000000000000000)
BEGIN;
UPDATE accounts SET balance = balance + 1.00 WHERE sid = :aid RETURNING balance AS after \gset
INSERT INTO postings (account, amount, pay_method, refer_trans_id, balance_after) VALUES (:aid, 1.00, 4, 'pg-' || :ref, :after);
COMMIT;
