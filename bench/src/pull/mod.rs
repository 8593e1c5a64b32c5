//! Parts of `pull-bench`: the registry, the test images, the columns and the report.

pub mod cmd;
pub mod columns;
pub mod gen;
pub mod images;
pub mod registry;
pub mod report;
