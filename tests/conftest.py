# Copyright (c) mmevo contributors. All rights reserved.
import os

# Set before torch (and its libgomp) is imported by any test module: OpenMP threads then sleep
# instead of spin-waiting between parallel regions. With any other busy process on a 2-core
# machine, spinning threads make a Mask R-CNN / UperNet step 10-30x slower.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
