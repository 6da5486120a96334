"""Class Activation Maps and the Grad-CAM family as pure functions, rendering, faithfulness."""
