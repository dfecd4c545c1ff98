-- 0045: review sessions signed out before they expired.
--
-- A review session is a signed cookie (receiver.review.sessions) that reads as valid until it
-- expires (12 hours): clearing it in the browser at "sign out" left any copy of it (another
-- tab's, a shared machine's, one read off a proxy log) good until then. Sign-out now records
-- the cookie's SHA-256 here until the moment it would have expired anyway, and a page refuses a
-- cookie found here. Every replica reads the same table, so a sign-out holds on all of them.
-- Rows past `until` mean nothing; each sign-out deletes them (a few a day), so no job prunes.
CREATE TABLE review_signouts (
    digest bytea PRIMARY KEY,
    until timestamptz NOT NULL
);
