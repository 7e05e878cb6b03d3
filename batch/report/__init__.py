"""What people read: reports, status, metrics."""
