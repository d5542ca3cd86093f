//! A MySQL row as Coherent renders it, one renderer for every reader.
//!
//! A cell is the text MySQL prints for it ([`Cell`]): the binlog decoder renders row
//! images into cells ([`render_value`], in [`text`]), and a text-protocol query result
//! already arrives as that text ([`text_cell`]). Keys are rendered from cells (see
//! [`crate::rules`]); a row's value as the cache-aside library's `Json` codec stores
//! it is rendered from cells by their column's kind ([`CellKind`], [`json_object`], in
//! [`json`]). The pipeline's decoder and both audits go through this module, so a row
//! read from the binlog and the same row read by a query render to the same bytes.

mod json;
mod text;

pub use json::{json_object, CellKind};
pub use text::{render_value, text_cell};

use bytes::Bytes;
use mysql_common::binlog::value::BinlogValue;
use std::sync::Arc;

/// One row's images as decoded, indexed by column position (`None` = the column is
/// not in the image, as with `binlog_row_image=MINIMAL`).
pub type RawImage = Vec<Option<BinlogValue<'static>>>;

/// What [`render_value`] needs to know about a column beyond the binlog's type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnRender {
    /// Integer column declared UNSIGNED.
    pub unsigned: bool,
    /// ENUM labels, in declaration order (index 1 is the first).
    pub enum_values: Vec<Bytes>,
    /// SET labels, in declaration order (bit 0 is the first).
    pub set_values: Vec<Bytes>,
}

/// A rendered cell: the bytes MySQL prints for it, NULL, or not in the image.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// The value as MySQL prints it.
    Value(Bytes),
    /// Not in the row image (partial images, partial JSON updates).
    Absent,
}

impl Cell {
    /// The text of a value; `None` for NULL or a cell not in the image.
    pub fn text(&self) -> Option<&[u8]> {
        match self {
            Cell::Value(b) => Some(b),
            Cell::Null | Cell::Absent => None,
        }
    }
}

/// A named, rendered row image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Column names (shared by all rows of a table).
    pub columns: Arc<[String]>,
    /// Rendered cells, in column order.
    pub cells: Vec<Cell>,
}

impl Row {
    /// The cell of column `name`, if the table has it.
    pub fn get(&self, name: &str) -> Option<&Cell> {
        self.columns
            .iter()
            .position(|c| c == name)
            .and_then(|i| self.cells.get(i))
    }
}
