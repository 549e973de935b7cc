//! The catalog of known plugins (definitions shipped as data in `taps/`), looked up by name and
//! variant when a project shadows a known plugin.
