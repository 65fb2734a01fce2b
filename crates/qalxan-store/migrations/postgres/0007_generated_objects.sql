-- The STIX objects Qalxan generates for indicators that came without one are drawn from the
-- indicator when TAXII or an export reads them (body ''), instead of being written with every
-- import: a feed of a million values no longer writes a million ~600-byte documents.
ALTER TABLE stix_objects ADD COLUMN indicator_id BIGINT;
CREATE INDEX stix_objects_indicator ON stix_objects (indicator_id) WHERE indicator_id IS NOT NULL;
