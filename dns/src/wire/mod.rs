//! The DNS message format: header, questions, names with compression,
//! resource records and EDNS(0), as checked views and representations.
