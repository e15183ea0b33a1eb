"""Training: MovingDigits-AV and real datasets, teacher and student models, evaluation, bundle export."""
