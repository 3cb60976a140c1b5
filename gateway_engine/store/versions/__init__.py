"""The store's own migration branch (``store``): the tables every feature shares."""
