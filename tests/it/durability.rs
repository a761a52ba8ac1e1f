//! Durability of the single SQLite file: the writer thread's faults, a full disk, `kill -9`, and
//! clean stops.

mod crash;
mod full_disk;
mod load;
mod writer;
