"""Circuit discovery: the graph, tasks with schemas, EAP / EAP-IG / position-aware EAP, evaluation."""
