//! Float64 reference implementations.
