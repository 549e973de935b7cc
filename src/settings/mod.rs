//! Layered setting resolution in Meltano's order, with the origin of every value.
