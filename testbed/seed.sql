-- Testbed data, seeded with generate_series at sizes where the scenarios' problems are real.
--   users     1,000,000 rows  email (no index: slow-query / missing-index), handle (indexed twin)
--   orders       20,000 rows  10 per user for users 1..2,000
--   items       200,000 rows  10 per order, indexed by order_id
--   events       50,000 rows  ~150 bytes each (unbounded-result, large-payload, in-memory-sort)
--   accounts         10 rows  the hot rows of lock-contention
--   messages  1,000,000 rows  500 per user, 1,000 per room: "the latest 20 of a user" has no index
--                             (missing-index: the one in the sort's order); a room's has one
--   dj_*                      the Django shop's (django_shop/): 1,000 authors, 10,000 books, 300,000
--                             reviews, and the same reviews with a trigram index on upper(body)
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
CREATE EXTENSION IF NOT EXISTS hypopg;
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE users (
    id bigint PRIMARY KEY,
    email text NOT NULL,
    handle text NOT NULL,
    name text NOT NULL,
    created_at timestamptz NOT NULL
);
INSERT INTO users
SELECT g, 'user' || g || '@example.com', 'user' || g, 'User ' || g, now() - (g || ' minutes')::interval
FROM generate_series(1, 1000000) AS g;
CREATE INDEX users_handle ON users (handle);

CREATE TABLE orders (
    id bigint PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id),
    total numeric(10, 2) NOT NULL,
    created_at timestamptz NOT NULL
);
INSERT INTO orders
SELECT g, 1 + (g - 1) / 10, (g % 500) + 0.99, now() - (g || ' hours')::interval
FROM generate_series(1, 20000) AS g;
CREATE INDEX orders_user_id ON orders (user_id);

CREATE TABLE items (
    id bigint PRIMARY KEY,
    order_id bigint NOT NULL REFERENCES orders (id),
    sku text NOT NULL,
    qty int NOT NULL
);
INSERT INTO items
SELECT g, 1 + (g - 1) / 10, 'SKU-' || (g % 5000), 1 + g % 4
FROM generate_series(1, 200000) AS g;
CREATE INDEX items_order_id ON items (order_id);

CREATE TABLE events (
    id bigint PRIMARY KEY,
    kind text NOT NULL,
    score int NOT NULL,
    payload text NOT NULL,
    created_at timestamptz NOT NULL
);
INSERT INTO events
SELECT g, (ARRAY['click', 'view', 'buy', 'share'])[1 + g % 4], (g * 7919) % 100000,
       repeat(md5(g::text), 4), now() - (g || ' seconds')::interval
FROM generate_series(1, 50000) AS g;
CREATE INDEX events_score ON events (score);

CREATE TABLE messages (
    id bigint PRIMARY KEY,
    user_id bigint NOT NULL,
    room_id bigint NOT NULL,
    body text NOT NULL,
    created_at timestamptz NOT NULL
);
INSERT INTO messages
SELECT g, 1 + (g * 7) % 2000, 1 + g % 1000, 'message ' || g, now() - (g || ' seconds')::interval
FROM generate_series(1, 1000000) AS g;
CREATE INDEX messages_room_created ON messages (room_id, created_at);

CREATE TABLE accounts (id int PRIMARY KEY, balance numeric(12, 2) NOT NULL);
INSERT INTO accounts SELECT g, 1000000 FROM generate_series(1, 10) AS g;

CREATE TABLE dj_author (id bigint PRIMARY KEY, name varchar(100) NOT NULL);
INSERT INTO dj_author SELECT g, 'Author ' || g FROM generate_series(1, 1000) AS g;
CREATE TABLE dj_book (
    id bigint PRIMARY KEY,
    title varchar(200) NOT NULL,
    author_id bigint NOT NULL REFERENCES dj_author (id)
);
INSERT INTO dj_book SELECT g, 'Book ' || g, 1 + (g * 37) % 1000 FROM generate_series(1, 10000) AS g;
CREATE INDEX dj_book_author_id ON dj_book (author_id);
-- A hundred reviews mention a zebra, all near the end of the table: a search for the rare word
-- reads nearly every row before it fills its page of 20.
CREATE TABLE dj_review (id bigint PRIMARY KEY, book_id bigint NOT NULL REFERENCES dj_book (id), body text NOT NULL);
INSERT INTO dj_review
SELECT g, 1 + g % 10000,
       'Review ' || g || ': ' || md5(g::text) || CASE WHEN g > 290000 AND g % 100 = 0 THEN ' a Zebra on page ' || g ELSE ' a fine read' END
FROM generate_series(1, 300000) AS g;
CREATE INDEX dj_review_book_id ON dj_review (book_id);
CREATE TABLE dj_review_indexed (LIKE dj_review INCLUDING ALL);
INSERT INTO dj_review_indexed SELECT * FROM dj_review;
CREATE INDEX dj_review_indexed_body ON dj_review_indexed USING gin (upper(body) gin_trgm_ops);

VACUUM ANALYZE;
