"""Privacy checks: membership-inference audits (and, later, DP budget checks)."""
