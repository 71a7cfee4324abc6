"""Split reviser (SR): the planner behind a gRPC face."""
