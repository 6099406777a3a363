"""Session keys and the rules that turn raw keys into canonical store keys."""
