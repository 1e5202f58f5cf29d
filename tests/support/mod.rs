//! Shared support code for integration tests.
// Each integration test binary compiles this module and uses only part of it.
#![allow(dead_code)]

pub mod apiserver;
pub mod volume_controller;
