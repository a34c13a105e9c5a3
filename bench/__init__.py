"""diglot's benchmark: a fast fake upstream, a bare relay floor, and the wrk-driven runner."""
