"""review domain: agreement, consensus, labeler quality, gold tasks and the review queue."""
