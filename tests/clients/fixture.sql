-- Fixture of the PostgreSQL client matrix (tests/clients/): the tables every client script
-- reads. Load it with psql into the database the gateway fronts (directly, not through the
-- gateway); it drops and recreates its tables, so it can be loaded again.
--
-- matrix_types holds no card number, so every value must come back unchanged through the
-- masking gateway. Its numbers and texts are chosen so that no digit run is a Luhn-valid
-- 13-19 digit number (the int8 is 17 digits, Luhn-invalid, and above 2^53).
-- matrix_cards holds two PANs (4111111111111111, 5500005555555559) in every kind of column a
-- masker meets; the clients know the masked forms. matrix_orders references matrix_cards so
-- a pg_dump/pg_restore round trip has a foreign key to restore.
\set ON_ERROR_STOP on
set client_min_messages = warning;
drop table if exists matrix_orders, matrix_cards, matrix_types cascade;

create table matrix_types (
    id int primary key,
    c_int2 int2,
    c_int4 int4,
    c_int8 int8,
    c_numeric numeric(12, 4),
    c_float4 float4,
    c_float8 float8,
    c_bool bool,
    c_text text,
    c_varchar varchar(20),
    c_char char(5),
    c_bytea bytea,
    c_date date,
    c_time time,
    c_timestamp timestamp,
    c_timestamptz timestamptz,
    c_interval interval,
    c_uuid uuid,
    c_inet inet,
    c_cidr cidr,
    c_macaddr macaddr,
    c_json json,
    c_jsonb jsonb,
    c_text_arr text[],
    c_int4_arr int4[]
);

insert into matrix_types values
(1, -32768, 2147483647, 12345678901234567, 12345678.9012, 1.5, -1234.5678, true,
 'héllo 日本 🎉', 'varchar é', 'ab', '\xdeadbeef00ff'::bytea,
 '2024-02-29', '13:45:30.123456', '2024-02-29 13:45:30.123456', '2024-02-29 13:45:30.123456+00',
 '3 days 04:05:06.789', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
 '203.0.113.7/24', '198.51.100.0/24', '08:00:2b:01:02:03',
 '{"a": [1, 2.5, "x"], "b": null}', '{"k": "日本", "n": 42, "nested": {"t": true}}',
 array['a', 'b c', 'é', null], array[1, 2, 3]),
-- Edge values: empty (not NULL) text, bytea, jsonb array and text[]; NULL everywhere else.
(2, 0, null, null, null, null, null, false,
 '', null, null, '\x'::bytea,
 null, null, null, null,
 null, null,
 null, null, null,
 null, '[]',
 '{}', null);

create table matrix_cards (
    id int primary key,
    holder text,
    pan text,
    pan_spaced varchar(32),
    pan_num bigint,
    pan_dec numeric(20, 0),
    meta jsonb,
    pans text[],
    nums bigint[],
    note json,
    card_id uuid,
    created timestamptz
);

insert into matrix_cards values
(1, 'Ada Lovelace', '4111111111111111', '4111 1111 1111 1111', 4111111111111111, 4111111111111111,
 '{"pan": "4111111111111111", "n": 4111111111111111, "brand": "visa"}',
 array['4111111111111111', '5500005555555559'], array[4111111111111111, 5500005555555559],
 '{"pan": "4111111111111111", "n": 4111111111111111, "brand": "visa"}',
 '00000000-0000-0000-0000-000000000000', '2024-03-01 12:00:00+00'),
(2, 'Grace Hopper', '5500005555555559', '5500 0055 5555 5559', 5500005555555559, 5500005555555559,
 '{"pan": "5500005555555559", "n": 5500005555555559, "brand": "mastercard"}',
 array['4111111111111111', '5500005555555559'], array[4111111111111111, 5500005555555559],
 '{"pan": "5500005555555559", "n": 5500005555555559, "brand": "mastercard"}',
 '6ba7b810-9dad-11d1-80b4-00c04fd430c8', '2024-03-02 08:30:00.5+00'),
-- No card: NULL and empty PAN columns must pass the masker unchanged.
(3, 'No Card', null, null, null, null, '{"brand": null}', '{}', null, null,
 'f47ac10b-58cc-4372-a567-0e02b2c3d479', '2024-03-03 00:00:00+00');

create table matrix_orders (
    id int primary key,
    card_id int not null references matrix_cards (id),
    amount numeric(10, 2) not null
);

insert into matrix_orders values (1, 1, 19.99), (2, 1, 5.00), (3, 2, 120.50);
