"""Marketing reports over the warehouse snapshot: queries, market basket, uplift, terminal and HTML output."""
