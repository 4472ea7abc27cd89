"""Line integration (issue 13): acknowledged reject delivery, OPC UA server, reference line controller."""
