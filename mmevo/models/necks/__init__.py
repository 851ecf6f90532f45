# Copyright (c) mmevo contributors. All rights reserved.
