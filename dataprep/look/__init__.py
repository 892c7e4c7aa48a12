"""Looking at a built dataset: ``inspect`` (rows with their loss masks), ``report`` (statistics and
plots) and the recipe preview."""
