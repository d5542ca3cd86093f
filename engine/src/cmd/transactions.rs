//! (filled in by its family's work)

use crate::command::CommandSpec;

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    vec![]
}
