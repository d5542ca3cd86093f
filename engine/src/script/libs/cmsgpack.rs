//! Placeholder.

use mlua::{Lua, Table};

/// The library's table.
pub(crate) fn table(lua: &Lua) -> mlua::Result<Table> {
    lua.create_table()
}
