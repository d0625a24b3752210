"""What the AWS stack's functions share: the ledger table (carrental.aws.ledger) and what they do
to the data lake bucket (carrental.aws.lake_bucket). Plain functions over boto3 clients that the
caller creates; imported on Lambda only (never by the Spark jobs or the local lake).
"""
