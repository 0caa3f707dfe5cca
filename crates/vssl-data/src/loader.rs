//! Not implemented yet (placeholder for the data issue).
