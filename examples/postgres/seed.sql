-- Source data for the example: run against the `shop_source` database.
CREATE SCHEMA IF NOT EXISTS shop;
CREATE TABLE IF NOT EXISTS shop.customers (
    id integer PRIMARY KEY,
    name text NOT NULL,
    email text,
    tags text[],
    profile jsonb
);
CREATE TABLE IF NOT EXISTS shop.orders (
    id bigint PRIMARY KEY,
    customer_id integer REFERENCES shop.customers (id),
    amount numeric(12,2) NOT NULL,
    placed_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
INSERT INTO shop.customers VALUES
    (1, 'Ada', 'ada@example.com', '{vip}', '{"city": "London"}'),
    (2, 'Grace', NULL, '{}', '{"city": "Arlington", "since": 1943}')
ON CONFLICT DO NOTHING;
INSERT INTO shop.orders VALUES
    (100, 1, 19.99, '2024-03-01 10:00+00', '2024-03-01 10:00+00'),
    (101, 2, 1200.00, '2024-03-02 11:30+00', '2024-03-02 11:30+00'),
    (102, 1, 0.01, '2024-03-03 09:15+00', '2024-03-04 08:00+00')
ON CONFLICT DO NOTHING;
