"""Developer scripts; ``ros_reference`` runs as a module: ``python -m scripts.ros_reference``."""
