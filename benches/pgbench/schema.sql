CREATE TABLE accounts (sid bigint PRIMARY KEY, balance numeric(20,4) NOT NULL DEFAULT 0 CHECK (balance >= 0));
CREATE TABLE postings (
  sid bigserial PRIMARY KEY,
  account bigint NOT NULL REFERENCES accounts,
  amount numeric(20,4) NOT NULL,
  pay_method int NOT NULL,
  refer_trans_id text NOT NULL,
  balance_after numeric(20,4) NOT NULL,
  created timestamptz NOT NULL DEFAULT now(),
  UNIQUE (pay_method, refer_trans_id)
);
INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 10000) g;
