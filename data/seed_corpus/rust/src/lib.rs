pub mod binary_search;
pub mod clamp;
pub mod roman;
pub mod run_length;
