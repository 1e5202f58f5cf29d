//! The simulator: trace formats, importers and generator (the event engine consumes [`trace::Trace`]).

pub mod trace;
