//! INCRBYFLOAT's arithmetic, exactly as Redis does it (to be written).
