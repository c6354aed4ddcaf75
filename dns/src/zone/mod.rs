//! Authoritative zone data: read from RFC 1035 master files at build time,
//! checked, baked into the image, and indexed for lookups at run time.
