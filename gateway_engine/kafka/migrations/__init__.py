"""The ``kafka`` migration branch: the asynchronous results every worker and instance shares."""
