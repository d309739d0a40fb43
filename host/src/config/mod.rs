//! Configuration: parsing, validation and the checked types the rest of the host runs on.
