-- examples/cards.sql — sample cardholder data for the Warden quickstart (examples/demo.sh).
--
-- Every card number here is a public test number (or a deliberately broken one); nothing is
-- real. The rows exercise the `pci-mask` policy: PANs contiguous, grouped by spaces or dashes,
-- 13 to 19 digits, inside longer text, in text / varchar / char columns, NULLs, Luhn-invalid
-- look-alikes and other long numbers (phones, order and customer numbers) that must stay
-- visible, and a table with no card data at all.
--
-- Load it as a superuser into the target database (re-running it starts over):
--   psql -v gateway_role=warden -d payments -f examples/cards.sql
-- `gateway_role` (default `warden`) is the gateway's own login on this server: the role named
-- by `[targets.payments.postgres] user` in the config. It is created (LOGIN, no password) when
-- missing; give it a password yourself. It gets read/write on the tables, never ownership, so
-- even a DROP that slipped past the policies would fail.

\set ON_ERROR_STOP on
SET client_min_messages = warning;
\if :{?gateway_role}
\else
\set gateway_role warden
\endif

SELECT format('CREATE ROLE %I LOGIN', :'gateway_role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'gateway_role') \gexec

BEGIN;

DROP TABLE IF EXISTS owners, cards, merchants;

CREATE TABLE cards (
    id          serial PRIMARY KEY,
    holder      text NOT NULL,
    pan         text,            -- as the customer typed it
    pan_varchar varchar(32),     -- as a legacy system stored it
    pan_char    char(19),        -- fixed width, blank-padded
    note        text,            -- free text, sometimes with a PAN inside
    amount      numeric(12, 2),
    created     date
);

INSERT INTO cards (holder, pan, pan_varchar, pan_char, note, amount, created) VALUES
    -- Visa, contiguous
    ('Alice Example',  '4111111111111111',    '4111111111111111',    '4111111111111111',
     'Visa test card',                                                         12.50, '2024-01-05'),
    -- Mastercard grouped by spaces; the same number with dashes and spaces
    ('Bob Sample',     '5500 0055 5555 5559', '5500-0055-5555-5559', '5500 0055 5555 5559',
     'Mastercard, grouped by spaces',                                          80.00, '2024-01-09'),
    -- Amex 4-6-5 with dashes
    ('Carol Test',     '3782-822463-10005',   '378282246310005',     '3782 822463 10005',
     'Amex with dashes',                                                      310.99, '2024-01-17'),
    -- Discover
    ('Dan Demo',       '6011111111111117',    '6011 1111 1111 1117', '6011111111111117',
     'Discover',                                                                5.00, '2024-02-01'),
    -- 19 digits
    ('Erin Fixture',   '6011000000000000001', '6011000000000000001', '6011000000000000001',
     '19-digit Discover',                                                      42.00, '2024-02-03'),
    -- Luhn-invalid look-alike: not a PAN, stays visible
    ('Frank Lookalike','4111111111111112',    '4111 1111 1111 1112', '4111111111111112',
     'Luhn check fails: typo in the last digit, not a card number',             0.00, '2024-02-11'),
    -- no card yet: NULLs
    ('Grace Pending',  NULL,                  NULL,                  NULL,
     'card pending; customer phone +1 415 555 0100',                           NULL, '2024-02-14'),
    -- PAN inside free text, next to a phone number and a date
    ('Heidi Notes',    '4012888888881881',    '4012888888881881',    '4012 8888 8888 1881',
     'customer called from +1 415 555 0132 about card 4012888888881881 on 2024-03-14', 19.95, '2024-03-14'),
    -- PAN grouped inside text, next to an order id (a 14-digit, Luhn-invalid look-alike)
    ('Ivan Orders',    '5105105105105100',    '5105105105105100',    '5105105105105100',
     'order ORD-20240314-000042 paid with 5105 1051 0510 5100, refund pending', 64.10, '2024-03-15'),
    -- two PANs in one note
    ('Judy Twocards',  '371449635398431',     '3714-496353-98431',   '371449635398431',
     'Amex; backup cards 4242 4242 4242 4242 and 5200-8282-8282-8210 on file', 1200.00, '2024-03-20'),
    -- a 16-digit order number that is no card (Luhn-invalid)
    ('Mallory Ordernum','1234567812345678',   '1234567812345678',    '1234567812345678',
     'field holds order number 1234567812345678, not a card',                  15.00, '2024-04-01'),
    ('Niaj Plain',     '5555555555554444',    '5555555555554444',    '5555 5555 5555 4444',
     NULL,                                                                     99.99, '2024-04-02'),
    -- Mastercard 2-series
    ('Olivia Series2', '2223003122003222',    '2223 0031 2200 3222', '2223003122003222',
     'Mastercard 2-series BIN',                                                23.00, '2024-04-10'),
    -- Diners, 14 digits
    ('Peggy Diners',   '30569309025904',      '3056 930902 5904',    '30569309025904',
     'Diners Club, 14 digits',                                                 51.20, '2024-04-22'),
    -- JCB
    ('Rupert JCB',     '3566002020360505',    '3566-0020-2036-0505', '3566002020360505',
     'JCB',                                                                   430.00, '2024-05-01'),
    -- UnionPay
    ('Sybil Union',    '6200000000000005',    '6200000000000005',    '6200 0000 0000 0005',
     'UnionPay; invoice INV-2024-0501',                                         7.77, '2024-05-01'),
    -- Visa debit; a second card in the note
    ('Trent Debit',    '4000056655665556',    '4000056655665556',    '4000 0566 5566 5556',
     'two cards: 4000056655665556 and 5200828282828210',                      150.00, '2024-05-09'),
    -- Visa, 19 digits
    ('Victor Long',    '4917610000000000003', '4917610000000000003', '4917610000000000003',
     'Visa, 19 digits',                                                        88.00, '2024-05-30'),
    -- Visa, 13 digits (old format)
    ('Walter Short',   '4222222222222',       '4222222222222',       '4222222222222',
     '13-digit Visa; support ticket 2024061100017',                             3.30, '2024-06-11'),
    -- not a card at all
    ('Zoe Empty',      'n/a',                 '',                    NULL,
     NULL,                                                                     NULL, NULL);

CREATE TABLE owners (
    id          serial PRIMARY KEY,
    card_id     integer REFERENCES cards (id),
    name        text NOT NULL,
    email       text,
    phone       text,
    customer_no text,   -- 16 digits, Luhn-invalid: not a card
    note        text
);

INSERT INTO owners (card_id, name, email, phone, customer_no, note) VALUES
    (1,  'Alice Example',   'alice@example.com',  '+1 415 555 0101',  '1000200030004001', NULL),
    (2,  'Bob Sample',      'bob@example.com',    '+44 20 7946 0958', '1000200030004002', 'prefers e-mail'),
    (3,  'Carol Test',      'carol@example.com',  '+49 30 901820',    '1000200030004003', NULL),
    (8,  'Heidi Notes',     'heidi@example.com',  '+1 415 555 0132',  '1000200030004004',
     'old card 6011 1111 1111 1117 replaced'),
    (12, 'Niaj Plain',      NULL,                 NULL,               NULL,               NULL);

-- A table without card data: masking finds nothing here.
CREATE TABLE merchants (
    id          serial PRIMARY KEY,
    name        text NOT NULL,
    city        text,
    mcc         char(4),
    terminal_id text
);

INSERT INTO merchants (name, city, mcc, terminal_id) VALUES
    ('Corner Books',  'Lisbon',    '5942', 'T-0001-77'),
    ('Night Train',   'Vienna',    '4112', 'T-0002-31'),
    ('Cafe Fixture',  'Portland',  '5814', 'T-0003-05'),
    ('Hardware Hut',  'Leeds',     '5251', 'T-0004-88'),
    ('Cloud Hosting', 'Frankfurt', '4816', 'T-0005-12');

-- The gateway's login: read and write the rows, own nothing.
GRANT CONNECT ON DATABASE :"DBNAME" TO :"gateway_role";
GRANT USAGE ON SCHEMA public TO :"gateway_role";
GRANT SELECT, INSERT, UPDATE, DELETE ON cards, owners, merchants TO :"gateway_role";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO :"gateway_role";

COMMIT;
