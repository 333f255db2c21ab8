\set aid random(1, 10000)
SELECT balance FROM accounts WHERE sid = :aid;
