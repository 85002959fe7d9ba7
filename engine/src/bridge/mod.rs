//! Bridges: MAC learning, VLANs, flooding; and xconnects.
