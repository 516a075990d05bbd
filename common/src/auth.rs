//! (being written: cram digest and pkam signature verification)
