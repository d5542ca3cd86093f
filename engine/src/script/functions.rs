//! FUNCTION libraries (`functions.c`, `function_lua.c`).

/// The function libraries and their VM.
#[derive(Debug, Default)]
pub(crate) struct Functions {}
